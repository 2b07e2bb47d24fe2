"""The project database schema: numbered migrations as SQL text, applied in order.

Never edit a released migration; append a new one. ``PRAGMA user_version`` holds
the number of the last applied migration.
"""

from __future__ import annotations

MIGRATIONS: tuple[tuple[str, str], ...] = (
    (
        "001_initial",
        """
        CREATE TABLE classes (
            id          INTEGER PRIMARY KEY,
            name        TEXT NOT NULL,
            name_key    TEXT NOT NULL,          -- casefolded name: identity of a class
            names       TEXT NOT NULL DEFAULT '[]',  -- JSON list of search names
            template    TEXT NOT NULL DEFAULT '{name}',
            position    INTEGER NOT NULL DEFAULT 0,
            deleted     INTEGER NOT NULL DEFAULT 0,
            created_at  TEXT NOT NULL
        );
        CREATE UNIQUE INDEX classes_live_name ON classes(name_key) WHERE deleted = 0;

        CREATE TABLE images (
            id          INTEGER PRIMARY KEY,
            sha256      TEXT NOT NULL UNIQUE,   -- of the stored JPEG file
            class_id    INTEGER NOT NULL REFERENCES classes(id),
            split       TEXT NOT NULL CHECK (split IN ('train', 'valid')),
            deleted     INTEGER NOT NULL DEFAULT 0,
            width       INTEGER NOT NULL,
            height      INTEGER NOT NULL,
            nbytes      INTEGER NOT NULL,
            phash       TEXT NOT NULL,
            dup_of      INTEGER REFERENCES images(id),  -- nearest earlier near duplicate
            flags       TEXT NOT NULL DEFAULT '',       -- space separated tags
            source      TEXT NOT NULL,          -- folder | zip | download | upload
            source_url  TEXT,
            page_url    TEXT,
            title       TEXT,
            query       TEXT,
            original_name TEXT,
            candidate_id INTEGER,
            added_at    TEXT NOT NULL
        );
        CREATE INDEX images_class ON images(class_id, deleted);
        CREATE INDEX images_source_url ON images(source_url);

        CREATE TABLE candidates (
            id            INTEGER PRIMARY KEY,
            class_id      INTEGER NOT NULL REFERENCES classes(id),
            image_url     TEXT NOT NULL UNIQUE,
            thumbnail_url TEXT,
            page_url      TEXT,
            title         TEXT,
            query         TEXT,
            width         INTEGER,
            height        INTEGER,
            source        TEXT NOT NULL,        -- ddg | csv | urls
            state         TEXT NOT NULL DEFAULT 'pending'
                          CHECK (state IN ('pending', 'accepted', 'rejected', 'downloaded', 'failed')),
            error         TEXT,
            image_id      INTEGER REFERENCES images(id),
            attempts      INTEGER NOT NULL DEFAULT 0,
            created_at    TEXT NOT NULL,
            updated_at    TEXT NOT NULL
        );
        CREATE INDEX candidates_class_state ON candidates(class_id, state);

        -- History of user actions; undo applies the inverse of the newest live one.
        CREATE TABLE events (
            id        INTEGER PRIMARY KEY,
            at        TEXT NOT NULL,
            kind      TEXT NOT NULL,
            summary   TEXT NOT NULL,
            payload   TEXT NOT NULL,            -- JSON, enough to invert exactly
            undone    INTEGER NOT NULL DEFAULT 0
        );

        -- Redo journal of file moves: written in the same transaction as the DB change
        -- they belong to, carried out after commit, finished on the next open after a crash.
        CREATE TABLE file_ops (
            id   INTEGER PRIMARY KEY,
            src  TEXT NOT NULL,
            dst  TEXT NOT NULL
        );

        CREATE TABLE settings (
            key   TEXT PRIMARY KEY,
            value TEXT NOT NULL                 -- JSON
        );
        """,
    ),
    (
        "002_jobs",
        """
        -- Long work (search, download, later training) runs in its own process and reports here,
        -- so every tab and the CLI see the same progress, and a page change stops nothing.
        CREATE TABLE jobs (
            id               INTEGER PRIMARY KEY,
            kind             TEXT NOT NULL,          -- search | download | ...
            state            TEXT NOT NULL DEFAULT 'running'
                             CHECK (state IN ('running', 'done', 'failed', 'cancelled')),
            pid              INTEGER,
            args             TEXT NOT NULL DEFAULT '{}',   -- JSON, what was asked
            progress         TEXT NOT NULL DEFAULT '{}',   -- JSON, latest progress
            message          TEXT NOT NULL DEFAULT '',
            result           TEXT,                          -- JSON report when finished
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            started_at       TEXT NOT NULL,
            updated_at       TEXT NOT NULL,
            finished_at      TEXT
        );
        CREATE INDEX jobs_kind_state ON jobs(kind, state);
        """,
    ),
    (
        "003_runs",
        """
        -- Trained (or imported) models: files in runs/<id>/, the record here.
        CREATE TABLE runs (
            id          TEXT PRIMARY KEY,       -- sortable: 20261124-093000-ab12
            state       TEXT NOT NULL DEFAULT 'running'
                        CHECK (state IN ('running', 'done', 'failed', 'cancelled')),
            source      TEXT NOT NULL DEFAULT 'trained',   -- trained | imported
            params      TEXT NOT NULL DEFAULT '{}',        -- JSON: arch, epochs, size, ...
            vocab       TEXT NOT NULL DEFAULT '[]',        -- JSON: class names in model output order
            metrics     TEXT NOT NULL DEFAULT '{}',        -- JSON summary (error_rate, valid_loss, ...)
            message     TEXT NOT NULL DEFAULT '',
            job_id      INTEGER REFERENCES jobs(id),
            created_at  TEXT NOT NULL,
            finished_at TEXT
        );
        -- Per-image class probabilities of a run (valid-split rows are out-of-sample).
        CREATE TABLE predictions (
            run_id      TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            image_id    INTEGER NOT NULL REFERENCES images(id),
            probs       TEXT NOT NULL,          -- JSON list aligned with runs.vocab
            predicted   TEXT NOT NULL,
            confidence  REAL NOT NULL,
            PRIMARY KEY (run_id, image_id)
        );
        CREATE TABLE meta (
            key   TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
        """,
    ),
    (
        "004_review",
        """
        -- Review decisions. An image counts as reviewed while its class is still the one the
        -- decision confirmed, so undoing a relabel (or relabeling elsewhere) puts it back in the queue.
        -- No foreign keys: rows of images that no longer exist are simply never joined.
        CREATE TABLE review_marks (
            image_id  INTEGER NOT NULL,
            kind      TEXT NOT NULL CHECK (kind IN ('label', 'duplicate')),
            class_id  INTEGER NOT NULL,     -- the class the decision confirmed
            at        TEXT NOT NULL,
            PRIMARY KEY (image_id, kind)
        );
        -- Latest out-of-sample class probabilities per image (meta 'review_fit' says how they were made).
        CREATE TABLE review_scores (
            image_id  INTEGER PRIMARY KEY,
            probs     TEXT NOT NULL,        -- JSON list aligned with the class ids in meta 'review_fit'
            source    TEXT NOT NULL         -- head | head+model
        );
        """,
    ),
    (
        "005_process_identity",
        """
        -- A pid alone is reused (after a reboot, or by a busy machine): a job or run counts as
        -- alive only while a process with its pid AND this start time (seconds since the epoch,
        -- as the OS reports it) exists. NULL in rows written before this migration.
        ALTER TABLE jobs ADD COLUMN pid_started REAL;
        ALTER TABLE runs ADD COLUMN pid INTEGER;
        ALTER TABLE runs ADD COLUMN pid_started REAL;
        """,
    ),
    (
        "006_candidate_scores",
        """
        -- The model's opinion of a search candidate before download (review/candidates.py): its
        -- thumbnail embedded with the review backbone, scored by a head fitted on every labeled image.
        -- No foreign keys: a score of a candidate that no longer exists is simply never joined.
        CREATE TABLE candidate_scores (
            candidate_id INTEGER PRIMARY KEY,
            probs        TEXT NOT NULL,         -- JSON object {class_id: probability}
            dup_image_id INTEGER,               -- nearest dataset image by thumbnail phash, if near
            dup_distance INTEGER,
            error        TEXT,                  -- why the thumbnail could not be scored (probs '{}')
            backbone     TEXT NOT NULL,         -- Backbone.id the thumbnail was embedded with
            scored_at    TEXT NOT NULL
        );
        """,
    ),
    (
        "007_data_version",
        """
        -- One counter that every write to the tables the pages derive things from bumps, in the
        -- writer's own transaction, whichever process it is (store/version.py keys its per-process
        -- memo on it). ``token`` tells two databases apart (a project deleted and created again
        -- counts from 0 anew). Jobs, runs and events are left out: they change every second while
        -- work runs and nothing memoized reads them.
        CREATE TABLE data_version (
            id    INTEGER PRIMARY KEY CHECK (id = 1),
            token TEXT NOT NULL,
            n     INTEGER NOT NULL
        );
        INSERT INTO data_version (id, token, n) VALUES (1, lower(hex(randomblob(8))), 0);
        CREATE TRIGGER data_version_images_insert AFTER INSERT ON images
            BEGIN UPDATE data_version SET n = n + 1; END;
        CREATE TRIGGER data_version_images_update AFTER UPDATE ON images
            BEGIN UPDATE data_version SET n = n + 1; END;
        CREATE TRIGGER data_version_images_delete AFTER DELETE ON images
            BEGIN UPDATE data_version SET n = n + 1; END;
        CREATE TRIGGER data_version_classes_insert AFTER INSERT ON classes
            BEGIN UPDATE data_version SET n = n + 1; END;
        CREATE TRIGGER data_version_classes_update AFTER UPDATE ON classes
            BEGIN UPDATE data_version SET n = n + 1; END;
        CREATE TRIGGER data_version_classes_delete AFTER DELETE ON classes
            BEGIN UPDATE data_version SET n = n + 1; END;
        CREATE TRIGGER data_version_candidates_insert AFTER INSERT ON candidates
            BEGIN UPDATE data_version SET n = n + 1; END;
        CREATE TRIGGER data_version_candidates_update AFTER UPDATE ON candidates
            BEGIN UPDATE data_version SET n = n + 1; END;
        CREATE TRIGGER data_version_candidates_delete AFTER DELETE ON candidates
            BEGIN UPDATE data_version SET n = n + 1; END;
        CREATE TRIGGER data_version_candidate_scores_insert AFTER INSERT ON candidate_scores
            BEGIN UPDATE data_version SET n = n + 1; END;
        CREATE TRIGGER data_version_candidate_scores_update AFTER UPDATE ON candidate_scores
            BEGIN UPDATE data_version SET n = n + 1; END;
        CREATE TRIGGER data_version_candidate_scores_delete AFTER DELETE ON candidate_scores
            BEGIN UPDATE data_version SET n = n + 1; END;
        CREATE TRIGGER data_version_review_marks_insert AFTER INSERT ON review_marks
            BEGIN UPDATE data_version SET n = n + 1; END;
        CREATE TRIGGER data_version_review_marks_update AFTER UPDATE ON review_marks
            BEGIN UPDATE data_version SET n = n + 1; END;
        CREATE TRIGGER data_version_review_marks_delete AFTER DELETE ON review_marks
            BEGIN UPDATE data_version SET n = n + 1; END;
        CREATE TRIGGER data_version_review_scores_insert AFTER INSERT ON review_scores
            BEGIN UPDATE data_version SET n = n + 1; END;
        CREATE TRIGGER data_version_review_scores_update AFTER UPDATE ON review_scores
            BEGIN UPDATE data_version SET n = n + 1; END;
        CREATE TRIGGER data_version_review_scores_delete AFTER DELETE ON review_scores
            BEGIN UPDATE data_version SET n = n + 1; END;
        CREATE TRIGGER data_version_meta_insert AFTER INSERT ON meta
            BEGIN UPDATE data_version SET n = n + 1; END;
        CREATE TRIGGER data_version_meta_update AFTER UPDATE ON meta
            BEGIN UPDATE data_version SET n = n + 1; END;
        CREATE TRIGGER data_version_meta_delete AFTER DELETE ON meta
            BEGIN UPDATE data_version SET n = n + 1; END;
        CREATE TRIGGER data_version_settings_insert AFTER INSERT ON settings
            BEGIN UPDATE data_version SET n = n + 1; END;
        CREATE TRIGGER data_version_settings_update AFTER UPDATE ON settings
            BEGIN UPDATE data_version SET n = n + 1; END;
        CREATE TRIGGER data_version_settings_delete AFTER DELETE ON settings
            BEGIN UPDATE data_version SET n = n + 1; END;
        """,
    ),
    (
        "008_ui_meta_keys",
        """
        -- Meta keys that only remember a page's state (the Train form, saved on every edit) are read
        -- by nothing memoized: writing them no longer bumps data_version, which threw away every memo
        -- and the Review queue kept on disk. Those keys: 'train_form' and any key starting 'ui.'
        -- (store/version.py UI_META_KEYS and UI_META_PREFIX; a new page-state key takes the prefix and
        -- needs no migration). A write to any other key still bumps it, as do all other tables.
        DROP TRIGGER data_version_meta_insert;
        DROP TRIGGER data_version_meta_update;
        DROP TRIGGER data_version_meta_delete;
        CREATE TRIGGER data_version_meta_insert AFTER INSERT ON meta
            WHEN NEW.key <> 'train_form' AND NEW.key NOT GLOB 'ui.*'
            BEGIN UPDATE data_version SET n = n + 1; END;
        CREATE TRIGGER data_version_meta_update AFTER UPDATE ON meta
            WHEN (OLD.key <> 'train_form' AND OLD.key NOT GLOB 'ui.*')
              OR (NEW.key <> 'train_form' AND NEW.key NOT GLOB 'ui.*')
            BEGIN UPDATE data_version SET n = n + 1; END;
        CREATE TRIGGER data_version_meta_delete AFTER DELETE ON meta
            WHEN OLD.key <> 'train_form' AND OLD.key NOT GLOB 'ui.*'
            BEGIN UPDATE data_version SET n = n + 1; END;
        """,
    ),
    (
        "009_event_origin",
        """
        -- Who made each change: 'cli:<terminal session>' or 'browser:<page session>' (store/history.py).
        -- Undo acts on its author's last change; older rows (NULL) belong to everyone.
        ALTER TABLE events ADD COLUMN origin TEXT;
        CREATE INDEX events_origin ON events(origin, undone);
        """,
    ),
)
