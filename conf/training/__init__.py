"""The groups of the commands that train (train, sweep, audit), on their search path alone: textclf.config."""
