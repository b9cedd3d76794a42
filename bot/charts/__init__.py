"""Status at a glance: charts of pledges by status, drawn outside the bot's process.

spec    what a chart shows, built from pledges and status changes (pure data, JSON)
draw    the drawing, run as a child process (`python -m bot.charts.draw`): the imaging
        library is imported there and never into the bot
render  the bot's side: one child per drawing, bounded in time, each picture drawn once
        per content and status state and kept in a small cache

Imports the ground floor only, so cards, briefings and the client can all carry charts.
"""
