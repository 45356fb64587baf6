"""The study report: read a study's Parquet files, compute the comparisons, draw Plotly figures, write HTML.

data.py (loading, methods, searched keys) -> stats.py, pareto.py, headline.py, importance.py (numbers)
-> figures_*.py (Plotly figures) -> summary.py (text, tables) -> html.py (the page) -> report.py (all of it).
"""
