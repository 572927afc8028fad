"""Per-account plumbing that is neither order logic nor the Dhan codec.

``tokens``: who holds each account's access token and keeps it fresh (pasted, minted from
PIN + TOTP, renewed at Dhan). ``source_ip``: make every REST call and socket of an account
leave from its own whitelisted local address. ``auth_api``: the handful of Dhan calls those
two need (mint, renew, profile, whitelisted IPs), typed and secret-free.
``secret_sources``: where PINs, TOTP secrets and tokens may be kept at rest.
"""
