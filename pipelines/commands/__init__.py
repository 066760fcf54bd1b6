"""Commands of the `lpa` command line, grouped by what they work on."""
