"""The commands, one module per concept; each ``register(subparsers)`` adds its own parsers
beside its handlers."""
