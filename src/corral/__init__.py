"""corral: durable jobs, multi-step processes and task graphs for Python."""
