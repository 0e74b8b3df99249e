"""Emergency-repair tickets: the store, the lifecycle, on-call alerting and
the assessment of repair teams and contractors."""
