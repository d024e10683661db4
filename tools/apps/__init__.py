"""Small example apps run inside simulated pods (servers that name themselves, clients that tally)."""
