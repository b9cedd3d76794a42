"""pledgebot. The ground floor (config, errors, models; `storage` on them; store, search and
rate_budget on storage) imports nothing above it; `pledges`, `briefings`, `client` and
`local` stack on it (README, Architecture; tests/test_layout.py checks the direction)."""
