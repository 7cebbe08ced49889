"""What is shown: tables, figures, the papers' reference numbers, the explorer and the notebook checks."""
