"""The study on Ray Tune and Optuna: its phases, the search, the re-runs and what Tune calls back."""
