#!/bin/sh
# Answers direct messages: run by `mastotail --exec` once per event, with the event's JSON
# line on stdin. Needs curl and jq.
#
#   export MASTODON_SERVER=https://mastodon.example
#   export MASTODON_TOKEN_FILE=~/.config/mastotail/token
#   export BOT_ACCOUNT=mybot     # the bot's own acct, so that it never answers itself
#   mastotail --token-file "$MASTODON_TOKEN_FILE" --state ~/.local/state/mastotail/bot.json \
#       --exec-env MASTODON_SERVER --exec-env MASTODON_TOKEN_FILE --exec-env BOT_ACCOUNT \
#       direct --exec ./reply-bot.sh
#
# mastotail never passes its token to hooks, so the bot reads it from the file named by
# MASTODON_TOKEN_FILE. The token goes
# to curl through a header file, never on the command line, where `ps` would show it.
set -eu

[ "${MASTOTAIL_EVENT:-}" = conversation ] || exit 0

event=$(cat)
# The newest status of the conversation, unless it is our own answer.
status_id=$(printf '%s' "$event" | jq -r '.payload.last_status.id // empty')
author=$(printf '%s' "$event" | jq -r '.payload.last_status.account.acct // empty')
[ -n "$status_id" ] && [ -n "$author" ] || exit 0
# Its own reply becomes the conversation's newest status; answering it would loop forever.
bot=${BOT_ACCOUNT:?pass --exec-env BOT_ACCOUNT to mastotail, set to the acct of the bot itself}
[ "$author" != "$bot" ] || exit 0

token=$(cat "${MASTODON_TOKEN_FILE:?pass --exec-env MASTODON_TOKEN_FILE to mastotail}")
server=${MASTODON_SERVER:?pass --exec-env MASTODON_SERVER to mastotail}

headers=$(mktemp)
trap 'rm -f "$headers"' EXIT
printf 'Authorization: Bearer %s\n' "$token" > "$headers"

# The text comes from the server: it only ever travels as data (a form field), never as
# part of a command.
curl --silent --show-error --fail --max-time 20 \
    --header @"$headers" \
    --data-urlencode "status=@$author thanks, your message arrived." \
    --data-urlencode "in_reply_to_id=$status_id" \
    --data-urlencode "visibility=direct" \
    "$server/api/v1/statuses" > /dev/null
