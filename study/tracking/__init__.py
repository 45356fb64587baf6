"""Where a study is tracked beyond its folder: MLflow (``--mlflow``), imported only when asked for."""
