"""Reading a configuration: the schema of every setting, the TOML, and the matrix of runs."""
