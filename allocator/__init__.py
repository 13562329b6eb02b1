"""Job queue, placement policies, trace replay, capacity planner, autoscaling advice, cost attribution."""
