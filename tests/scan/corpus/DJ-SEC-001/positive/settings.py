# ruff: noqa

"""Credentials in known token formats (all made up for this corpus)."""
GITHUB_TOKEN = "ghp_u8jzPde0IgxLd6GncfBAepfJBd0Kh8oOOL8d"  # expect: DJ-SEC-001
AWS_ACCESS_KEY_ID = "AKIAZDOC9IS0J8HT9LGM"  # expect: DJ-SEC-001
STRIPE = "sk_live_xgJTeKdNnFRIBXuDL7DxtpYl"  # expect: DJ-SEC-001
maps_api_key = "AIzaFkM_R5Kjp1vRt-1fjORS_6ilI8ihN5KXSc7"  # expect: DJ-SEC-001
DONJON_KEY = "dj_b53f16947ccf25ec_Jr3J1TWDtkwtDDb-xHKas1VOqg6YYZYn9ZhyiA4uoRg"  # expect: DJ-SEC-001
client = make_client(token="xoxb-109281590139-6245957117777-tfjgVvVqE1SkHbn88HxjSI6b")  # expect: DJ-SEC-001
TELEGRAM_TOKEN = "7104559241:AAGx3kQp9ZLm2VwR8tYb1NcXs5Dj0HfUe4o"  # expect: DJ-SEC-001
NOTIFY_URL = "https://api.telegram.org/bot7104559241:AAGx3kQp9ZLm2VwR8tYb1NcXs5Dj0HfUe4o/sendMessage"  # expect: DJ-SEC-001
