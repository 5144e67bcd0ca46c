"""Trial tests for kukeond."""
