"""What operators see of a running node: metrics, readiness, structured logs, the metrics
listener. None of it takes part in consensus; all of it reads what the node already knows."""
