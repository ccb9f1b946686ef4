"""One router module per endpoint group."""
