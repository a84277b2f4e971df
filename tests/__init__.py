"""tunebus tests; a package so Ray workers can import trainables defined here."""
