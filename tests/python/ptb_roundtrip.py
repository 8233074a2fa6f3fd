"""An unmodified python-telegram-bot client against the relaygram sandbox.

Usage: ptb_roundtrip.py BASE_URL TOKEN USER_ID BOT_USERNAME
The sandbox must run with Telegram's flood limits on; USER_ID must have started the bot.
"""

import asyncio
import json
import sys
import urllib.request

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, MessageEntity
from telegram.constants import ParseMode
from telegram.error import BadRequest, RetryAfter


def control(base: str, path: str, body: dict) -> dict:
    req = urllib.request.Request(
        f"{base}{path}",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or b"{}")


async def main(base: str, token: str, user_id: int, username: str) -> None:
    bot = Bot(token, base_url=f"{base}/bot")
    async with bot:
        me = await bot.get_me()
        assert me.username == username and me.is_bot, me

        keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Yes", callback_data="yes")]])
        sent = await bot.send_message(
            user_id, "<b>Hello</b> <i>PTB</i>", parse_mode=ParseMode.HTML, reply_markup=keyboard
        )
        assert sent.text == "Hello PTB", sent.text
        assert [e.type for e in sent.entities] == [MessageEntity.BOLD, MessageEntity.ITALIC], sent.entities
        assert sent.reply_markup.inline_keyboard[0][0].callback_data == "yes"

        # Edits take the chat's flood-limit slots like sends (one a second to a private chat).
        await asyncio.sleep(1.1)
        edited = await bot.edit_message_text("edited", chat_id=user_id, message_id=sent.message_id)
        assert edited.text == "edited" and edited.edit_date is not None, edited
        try:
            await bot.edit_message_text("edited", chat_id=user_id, message_id=sent.message_id)
        except BadRequest as e:
            assert "message is not modified" in e.message.lower(), e.message
        else:
            raise AssertionError("an edit that changes nothing was accepted")
        await asyncio.sleep(1.1)
        marked = await bot.edit_message_reply_markup(
            chat_id=user_id, message_id=sent.message_id, reply_markup=keyboard
        )
        assert marked.reply_markup.inline_keyboard[0][0].text == "Yes", marked
        await asyncio.sleep(1.1)
        photo = await bot.send_photo(user_id, "https://example.com/p.png", caption="before")
        await asyncio.sleep(1.1)
        captioned = await bot.edit_message_caption(
            chat_id=user_id, message_id=photo.message_id, caption="<b>after</b>", parse_mode=ParseMode.HTML
        )
        assert captioned.caption == "after" and captioned.edit_date is not None, captioned
        try:
            await bot.edit_message_caption(chat_id=user_id, message_id=sent.message_id, caption="x")
        except BadRequest as e:
            assert "there is no caption in the message to edit" in e.message.lower(), e.message
        else:
            raise AssertionError("a text message's caption was edited")
        assert await bot.delete_message(user_id, photo.message_id)
        try:
            await bot.delete_message(user_id, photo.message_id)
        except BadRequest as e:
            assert "message to delete not found" in e.message.lower(), e.message
        else:
            raise AssertionError("a deleted message was deleted again")

        control(base, f"/sandbox/users/{user_id}/messages", {"bot": username, "text": "from the control API"})
        updates = await bot.get_updates(timeout=5)
        texts = [u.message.text for u in updates if u.message]
        assert "from the control API" in texts, texts
        await bot.get_updates(offset=updates[-1].update_id + 1)

        assert await bot.set_webhook("http://127.0.0.1:9/hook", secret_token="ptb-secret", max_connections=3)
        info = await bot.get_webhook_info()
        assert info.url == "http://127.0.0.1:9/hook" and info.max_connections == 3, info
        assert await bot.delete_webhook()
        assert (await bot.get_webhook_info()).url == ""

        try:
            for i in range(20):
                await bot.send_message(user_id, f"flood {i}")
        except RetryAfter as e:
            assert e.retry_after, e
        else:
            raise AssertionError("flooding a chat never raised RetryAfter")
    print("python-telegram-bot round trip OK")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
