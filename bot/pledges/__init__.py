"""What members read: content files, lookup by name, cards and the answers to commands.

Imports the ground floor (config, errors, models, store) only; never discord.
"""
