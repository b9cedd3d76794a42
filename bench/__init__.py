"""Benchmarks for pledgebot (scripts, not tests): `python -m bench [NAME ...] [--quick]`.

Machines are noisy, so every figure is reported as a ratio against a baseline measured in
the same run (a bare discord.py bot on the same local emulator, a LIKE scan on the same
database, or the bound Discord's rate limit sets). Nothing here contacts discord.com: every
bot talks to `bot.local.Emulator` on 127.0.0.1. tests/test_bench.py runs each benchmark in
a tiny configuration (`Settings.tiny`), so a change that breaks one fails the test suite.
"""
