"""Labels: phone label files and (later) full-context labels and linguistic features."""
