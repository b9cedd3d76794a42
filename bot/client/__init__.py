"""The discord.py wiring: the Bot, start-up, services, endpoints, posting to channels.

May import everything below it (`pledges`, `briefings`, the ground floor) and `local`.
"""
