"""pledgebot. The ground floor (config, errors, models, migrations, store, rate_budget)
imports no other part; `pledges`, `briefings`, `client` and `local` stack on it (README,
Architecture; tests/test_layout.py checks the direction)."""
