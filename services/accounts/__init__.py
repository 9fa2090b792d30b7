"""Who may use SpendGauge: API tokens with a role (stored hashed) and dashboard users (argon2id passwords), and the
in-memory directory that answers "who is this?" on every request."""
