"""The results store, the records in it, and the paper's reports, statistics and figures."""
