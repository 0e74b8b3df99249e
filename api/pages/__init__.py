"""HTML pages: the public status board, the feedback form, the technician page."""
