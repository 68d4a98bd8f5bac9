"""Student–teacher experiments of MATH.md §5 (sparse and dense feature learning)."""
