"""Rules: the rule language, one module per rule kind, and the streaming engine."""
