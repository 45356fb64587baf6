"""After the search: costs measured alone, held-out scores, patient folds and the paired verdict."""
