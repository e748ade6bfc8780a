"""The ticker benchmark harness: scenarios, load generator, peers and the report (`make bench`)."""
