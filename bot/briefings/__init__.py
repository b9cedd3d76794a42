"""Scheduled briefings, one idea a module:

rules       what a moderator typed (time, days, cron, date, time zone) read into a rule
recurrence  a rule (`Recurrence`) and when its slots fall, as local keys and UTC instants
zones       wall time in a zone and the instant it names, across clock changes
schedules   schedules, deliveries and their change log in the store, scoped by server
planner     when this process looks at each schedule; the reconcile loop
engine      a look fires: re-read, claim, compose, send, record
composer    each briefing composed once per slot and content state
compose     composing a briefing (pure)
sender      how the engine reaches Discord, and how a post fails
admin       moderator actions and validation
retention   daily pruning of old delivery rows

Imports the ground floor and `bot.pledges` (to compose cards); never discord.
"""
