"""The demo: synthetic FePh-format data and the base models it pre-trains; a client of the core."""
