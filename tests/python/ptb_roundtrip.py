"""An unmodified python-telegram-bot client against the relaygram sandbox.

Usage: ptb_roundtrip.py BASE_URL TOKEN USER_ID BOT_USERNAME
The sandbox must run with Telegram's flood limits on; USER_ID must have started the bot.
"""

import asyncio
import json
import sys
import urllib.request

from telegram import Bot, ChatPermissions, InlineKeyboardButton, InlineKeyboardMarkup, MessageEntity
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

        # Paid access: an invite link that creates join requests, approval, removal.
        owner = control(base, "/sandbox/users", {"first_name": "Owner"})["id"]
        group = control(base, "/sandbox/groups", {"title": "Paid", "owner": owner})["id"]
        rights = {"can_invite_users": True, "can_restrict_members": True}
        control(base, f"/sandbox/groups/{group}/bots", {"bot": username, "status": "administrator", "rights": rights})
        link = await bot.create_chat_invite_link(group, name="vip", creates_join_request=True)
        assert link.creates_join_request and link.name == "vip" and link.creator.username == username, link
        asker = control(base, "/sandbox/users", {"first_name": "Asker"})["id"]
        opened = control(base, f"/sandbox/users/{asker}/join", {"invite_link": link.invite_link})
        assert opened["result"] == "requested", opened
        kinds = ["message", "chat_member", "chat_join_request", "my_chat_member"]
        updates = await bot.get_updates(timeout=5, allowed_updates=kinds)
        requests = [u.chat_join_request for u in updates if u.chat_join_request]
        assert len(requests) == 1 and requests[0].from_user.id == asker, requests
        assert requests[0].user_chat_id == asker and requests[0].invite_link.name == "vip", requests
        await bot.get_updates(offset=updates[-1].update_id + 1)
        assert await bot.approve_chat_join_request(group, asker)
        try:
            await bot.approve_chat_join_request(group, asker)
        except BadRequest as e:
            assert "user_already_participant" in e.message.lower(), e.message
        else:
            raise AssertionError("a member's request was approved again")
        assert await bot.get_chat_member_count(group) == 3
        admins = await bot.get_chat_administrators(group)
        assert [a.status for a in admins] == ["creator", "administrator"], admins
        assert await bot.ban_chat_member(group, asker)
        assert (await bot.get_chat_member(group, asker)).status == "kicked"
        assert await bot.unban_chat_member(group, asker, only_if_banned=True)
        assert (await bot.get_chat_member(group, asker)).status == "left"
        updates = await bot.get_updates(timeout=5)
        moves = [
            (u.chat_member.old_chat_member.status, u.chat_member.new_chat_member.status)
            for u in updates
            if u.chat_member
        ]
        assert moves == [("left", "member"), ("member", "kicked"), ("kicked", "left")], moves
        joined = next(u.chat_member for u in updates if u.chat_member)
        assert joined.via_join_request and joined.invite_link.invite_link == link.invite_link, joined
        await bot.get_updates(offset=updates[-1].update_id + 1)

        # A mute with independent permissions, read back as ChatMemberRestricted.
        muted = control(base, "/sandbox/users", {"first_name": "Muted"})["id"]
        control(base, f"/sandbox/groups/{group}/members", {"user_id": muted})
        polls_only = ChatPermissions(can_send_polls=True)
        assert await bot.restrict_chat_member(group, muted, polls_only, use_independent_chat_permissions=True)
        m = await bot.get_chat_member(group, muted)
        assert m.status == "restricted" and m.is_member and m.can_send_polls, m
        assert not m.can_send_messages, m

        # A channel's subscription link: paying for it makes a member until the period ends.
        channel = control(base, "/sandbox/groups", {"title": "Premium", "type": "channel", "owner": owner})["id"]
        control(base, f"/sandbox/groups/{channel}/bots", {"bot": username, "status": "administrator", "rights": rights})
        sub = await bot.create_chat_subscription_invite_link(
            channel, subscription_period=2592000, subscription_price=50, name="monthly"
        )
        period = sub.subscription_period
        period = period.total_seconds() if hasattr(period, "total_seconds") else period
        assert period == 2592000 and sub.subscription_price == 50 and sub.name == "monthly", sub
        paid = control(base, f"/sandbox/users/{muted}/join", {"invite_link": sub.invite_link})
        assert paid["result"] == "joined", paid
        member = await bot.get_chat_member(channel, muted)
        assert member.status == "member" and member.until_date is not None, member
        edited = await bot.edit_chat_subscription_invite_link(channel, sub.invite_link, name="renamed")
        assert edited.name == "renamed" and edited.subscription_price == 50, edited

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
