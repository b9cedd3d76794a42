"""Following pledges: who follows what, and each change delivered to them exactly once.

`follows` keeps members' follows, their alert state (the DM channel once opened, a
pause) and servers' alert channels; `compose` words an alert; `dispatch` finds each
(recipient, event) not yet dealt with, claims it in the store, sends it and records how
it ended, with the briefing engine's discipline: a claim row before each send, a nonce
from the claim, a look for the post before a late re-send. Events (`pledge_events`) are
written by the store in the same transaction as the change they stand for.
"""
