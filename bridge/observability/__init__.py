"""What operators see: logging (one line per event, secrets scrubbed, every line of a call
tagged with it) and Prometheus metrics. May import: config."""
