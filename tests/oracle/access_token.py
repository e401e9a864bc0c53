"""Twilio's own Access Token for the inputs on stdin, at a fixed clock (tests/softphone.rs).

Reads {"account_sid", "api_key_sid", "api_key_secret", "twiml_app_sid", "identity",
"issued_at", "ttl"} and prints the JWT twilio-python's AccessToken and VoiceGrant make.
"""

import json
import sys
import time

from twilio.jwt.access_token import AccessToken
from twilio.jwt.access_token.grants import VoiceGrant

given = json.load(sys.stdin)
# The library reads the clock for jti, nbf and exp: fix it.
time.time = lambda: given["issued_at"]
token = AccessToken(
    given["account_sid"],
    given["api_key_sid"],
    given["api_key_secret"],
    identity=given["identity"],
    ttl=given["ttl"],
)
token.add_grant(
    VoiceGrant(outgoing_application_sid=given["twiml_app_sid"], incoming_allow=True)
)
print(token.to_jwt())
