"""The Voila drift dashboard: the data it shows, the server that serves it, its HTML export."""
