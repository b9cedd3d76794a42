"""Scheduled briefings: recurrence rules, schedules in the store, the engine, composing.

Imports the ground floor and `bot.pledges` (to compose cards); never discord.
"""
