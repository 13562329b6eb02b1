"""The capacity planner: price book, stochastic optimisation, the capacity report."""
