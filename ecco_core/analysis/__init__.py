"""Pure functions of a run (and its model, for lens and attribution) that return results."""
