"""Writes the relayed/*.eml reports: what the list's own Postfix sends to a copy's VERP return path when a
mailbox provider refuses the copy. The envelope is Postfix's bounce(8) DSN (RFC 3464) as Postfix 3.x writes it;
the replies are the providers' own texts, as their documentation and public bounce collections give them
(sources in ../README.md). Run it again after editing REPLIES: `python tests/data/bounces/relayed/make.py`.
Each line of expected.csv for these files is printed; paste them into ../expected.csv."""

from __future__ import annotations

import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name, recipient, remote MX, status, action, reply text, expected outcome
REPLIES = [
    ("gmail-no-such-user", "ghost@gmail.example.com", "gmail-smtp-in.l.google.com", "5.1.1", "failed",
     "550-5.1.1 The email account that you tried to reach does not exist. Please try double-checking the "
     "recipient's email address for typos or unnecessary spaces. For more information, go to "
     "https://support.google.com/mail/?p=NoSuchUser 41be03b00d2f7-5c6f1b2c3d4si123456a12.45 - gsmtp", "permanent"),
    ("gmail-disabled", "gone@gmail.example.com", "gmail-smtp-in.l.google.com", "5.2.1", "failed",
     "550-5.2.1 The email account that you tried to reach is inactive. For more information, go to "
     "https://support.google.com/mail/?p=DisabledUser d9443c01a7336-1f2d3e4f5a6si7890123ad.95 - gsmtp",
     "permanent"),
    ("gmail-over-quota", "full@gmail.example.com", "gmail-smtp-in.l.google.com", "4.2.2", "delayed",
     "452-4.2.2 The recipient's inbox is out of storage space. Please direct the recipient to "
     "https://support.google.com/mail/?p=OverQuotaTemp 5b1f17b1804b1-42c1d2e3f4asi123456f5a.12 - gsmtp",
     "temporary"),
    ("gmail-over-quota-final", "full@gmail.example.com", "gmail-smtp-in.l.google.com", "5.2.2", "failed",
     "552-5.2.2 The recipient's inbox is out of storage space and inactive. Please direct the recipient to "
     "https://support.google.com/mail/?p=OverQuotaPerm 5b1f17b1804b1-42c1d2e3f4asi123456f5a.12 - gsmtp",
     "temporary"),
    ("gmail-dmarc", "member@gmail.example.com", "gmail-smtp-in.l.google.com", "5.7.26", "failed",
     "550-5.7.26 Unauthenticated email from example.org is not accepted due to domain's DMARC policy. Please "
     "contact the administrator of example.org domain if this was a legitimate mail. To learn about the DMARC "
     "initiative, go to https://support.google.com/mail/?p=DmarcRejection a640c23a62f3a-a7a1b2c3d4esi12.3 - gsmtp",
     "ours"),
    ("gmail-unsolicited", "member@gmail.example.com", "gmail-smtp-in.l.google.com", "5.7.1", "failed",
     "550-5.7.1 Our system has detected that this message is likely unsolicited mail. To reduce the amount of "
     "spam sent to Gmail, this message has been blocked. For more information, go to "
     "https://support.google.com/mail/?p=UnsolicitedMessageError 2adb3069b0e04-52e1a2b3c4dsi1234567e87.123 - gsmtp",
     "ours"),
    ("gmail-rate-limited", "member@gmail.example.com", "gmail-smtp-in.l.google.com", "4.7.28", "delayed",
     "421-4.7.28 Gmail has detected an unusual rate of mail originating from your IP address 192.0.2.25. To "
     "protect our users from spam, mail has been temporarily rate limited. For more information, go to "
     "https://support.google.com/mail/?p=UnsolicitedRateLimitError - gsmtp", "temporary"),
    ("gmail-receiving-too-quickly", "busy@gmail.example.com", "gmail-smtp-in.l.google.com", "5.2.1", "failed",
     "550-5.2.1 The user you are trying to contact is receiving mail at a rate that prevents additional "
     "messages from being delivered. For more information, go to "
     "https://support.google.com/mail/?p=ReceivingRatePerm - gsmtp", "temporary"),
    ("gmail-ptr", "member@gmail.example.com", "gmail-smtp-in.l.google.com", "5.7.25", "failed",
     "550-5.7.25 The IP address sending this message does not have a PTR record setup, or the corresponding "
     "forward DNS entry does not point to the sending IP. As a policy, Gmail does not accept messages from IPs "
     "with missing PTR records. - gsmtp", "ours"),
    ("outlook-mailbox-unavailable", "nobody@outlook.example.com", "outlook-com.olc.protection.outlook.com",
     "5.5.0", "failed", "550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302). "
     "[AM2PEPF0001C711.eurprd05.prod.outlook.com 2024-06-28T09:11:02.123Z 08DC96D05C1F2E3A]", "permanent"),
    ("office365-recipient-not-found", "left@contoso.example.com", "contoso-com.mail.protection.outlook.com",
     "5.1.10", "failed", "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient left@contoso.example.com not "
     "found by SMTP address lookup", "permanent"),
    ("office365-edge-blocked", "left@contoso.example.com", "contoso-com.mail.protection.outlook.com", "5.4.1",
     "failed", "550 5.4.1 Recipient address rejected: Access denied. For more information see "
     "https://aka.ms/EXOSmtpErrors [AM4PEPF00027A5F.eurprd04.prod.outlook.com 2024-07-01T10:00:00.000Z "
     "08DC99C2A0B1C2D3]", "permanent"),
    ("outlook-blocklist-s3150", "member@hotmail.example.com", "hotmail-com.olc.protection.outlook.com", "5.7.1",
     "failed", "550 5.7.1 Unfortunately, messages from [192.0.2.25] weren't sent. Please contact your Internet "
     "service provider since part of their network is on our block list (S3150). You can also refer your "
     "provider to http://mail.live.com/mail/troubleshooting.aspx#errors. [DB5EUR03FT012.eop-EUR03.prod."
     "protection.outlook.com]", "ours"),
    ("office365-banned-ip", "member@contoso.example.com", "contoso-com.mail.protection.outlook.com", "5.7.606",
     "failed", "550 5.7.606 Access denied, banned sending IP [192.0.2.25]. To request removal from this list "
     "please visit https://sender.office.com/ and follow the directions. For more information please go to "
     "http://go.microsoft.com/fwlink/?LinkID=526655 AS(1430)", "ours"),
    ("office365-dmarc-reject", "member@contoso.example.com", "contoso-com.mail.protection.outlook.com",
     "5.7.509", "failed", "550 5.7.509 Access denied, sending domain EXAMPLE.ORG does not pass DMARC "
     "verification and has a DMARC policy of reject. [BN8NAM11FT049.eop-nam11.prod.protection.outlook.com "
     "2024-07-01T10:00:00.000Z 08DC99C2A0B1C2D3]", "ours"),
    ("office365-quota", "hoarder@contoso.example.com", "contoso-com.mail.protection.outlook.com", "5.2.2",
     "failed", "554 5.2.2 mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException.MapiExceptionShutoff"
     "Quota; Failed to process message due to a permanent exception with message Cannot open mailbox.",
     "temporary"),
    ("outlook-ip-reputation", "member@outlook.example.com", "outlook-com.olc.protection.outlook.com", "4.7.650",
     "delayed", "451 4.7.650 The mail server [192.0.2.25] has been temporarily rate limited due to IP "
     "reputation. For e-mail delivery information, see https://postmaster.live.com (S775) "
     "[Name=Protocol Filter Agent][AGT=PFA][MxId=11BB8C46F4CA6301]", "temporary"),
    ("yahoo-no-account", "nobody@yahoo.example.com", "mta7.am0.yahoodns.net", "5.0.0", "failed",
     "554 delivery error: dd This user doesn't have a yahoo.com account (nobody@yahoo.example.com) [0] - "
     "mta4211.mail.gq1.yahoo.com", "permanent"),
    ("yahoo-disabled", "old@yahoo.example.com", "mta7.am0.yahoodns.net", "5.0.0", "failed",
     "554 30 Sorry, your message to old@yahoo.example.com cannot be delivered. This mailbox is disabled "
     "(554.30)", "permanent"),
    ("yahoo-deferred-tss04", "member@yahoo.example.com", "mta7.am0.yahoodns.net", "4.7.0", "delayed",
     "421 4.7.0 [TSS04] Messages from 192.0.2.25 temporarily deferred due to unexpected volume or user "
     "complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes", "temporary"),
    ("yahoo-spamhaus-bl21", "member@yahoo.example.com", "mta7.am0.yahoodns.net", "5.7.1", "failed",
     "553 5.7.1 [BL21] Connections will not be accepted from 192.0.2.25, because the ip is in Spamhaus's list; "
     "see https://postmaster.yahooinc.com/error-codes", "ours"),
    ("yahoo-unauthenticated", "member@yahoo.example.com", "mta7.am0.yahoodns.net", "5.7.9", "failed",
     "550 5.7.9 This mail has been blocked because the sender is unauthenticated. Yahoo requires all senders to "
     "authenticate with either SPF or DKIM.", "ours"),
    ("icloud-user-unknown", "nobody@icloud.example.com", "mx01.mail.icloud.com", "5.1.1", "failed",
     "550 5.1.1 <nobody@icloud.example.com>: user does not exist", "permanent"),
    ("icloud-policy-cs01", "member@icloud.example.com", "mx01.mail.icloud.com", "5.7.1", "failed",
     "554 5.7.1 [CS01] Message rejected due to local policy. Please visit "
     "https://support.apple.com/en-us/HT204137", "ours"),
    ("mailru-disabled", "old@mail.example.ru", "mxs.mail.ru", "5.0.0", "failed",
     "550 Message was not accepted -- invalid mailbox.  Local mailbox old@mail.example.ru is unavailable: "
     "account is disabled", "permanent"),
    ("yandex-no-such-user", "nobody@yandex.example.ru", "mx.yandex.ru", "5.7.1", "failed",
     "550 5.7.1 No such user!", "permanent"),
    ("gmx-mailbox-unavailable", "nobody@gmx.example.de", "mx00.emig.gmx.net", "5.0.0", "failed",
     "550 Requested action not taken: mailbox unavailable", "permanent"),
    ("gmx-policy", "member@gmx.example.de", "mx00.emig.gmx.net", "5.0.0", "failed",
     "554-gmx.net (mxgmx117) Nemesis ESMTP Service not available 554-No SMTP service 554-Reject due to policy "
     "restrictions. 554 For explanation visit https://www.gmx.net/mail/senderguidelines?c=bl", "ours"),
    ("orange-invalid-recipient", "nobody@orange.example.fr", "smtp-in.orange.fr", "5.1.1", "failed",
     "550 5.1.1 Adresse d au moins un destinataire invalide. Invalid recipient. OFR_416 [416]", "permanent"),
    ("tonline-blocked", "member@t-online.example.de", "mx00.t-online.de", "5.7.1", "failed",
     "554 IP=192.0.2.25 - A problem occurred. (Ask your postmaster for help or to contact tosa@rx.t-online.de to "
     "clarify.) (BL)", "ours"),
    ("greylisted", "member@small.example.net", "mx.small.example.net", "4.2.0", "delayed",
     "450 4.2.0 <member@small.example.net>: Recipient address rejected: Greylisted, see "
     "http://postgrey.schweikert.ch/help/small.example.net.html", "temporary"),
    ("spamhaus-rbl", "member@small.example.net", "mx.small.example.net", "5.7.1", "failed",
     "554 5.7.1 Service unavailable; Client host [192.0.2.25] blocked using zen.spamhaus.org; "
     "https://www.spamhaus.org/query/ip/192.0.2.25", "ours"),
    ("null-mx", "member@parked.example.com", "", "5.1.10", "failed",
     "Domain parked.example.com does not accept mail (nullMX)", "permanent"),
    ("domain-not-found", "member@gone.example.com", "", "5.4.4", "failed",
     "Host or domain name not found. Name service error for name=gone.example.com type=A: Host not found",
     "permanent"),
    ("expired-timeout", "member@slow.example.com", "", "4.4.1", "failed",
     "connect to mx.slow.example.com[192.0.2.80]:25: Connection timed out", "temporary"),
    ("message-too-big", "member@small.example.net", "mx.small.example.net", "5.3.4", "failed",
     "552 5.3.4 Message size exceeds fixed limit", "ours"),
    ("spf-fail", "member@strict.example.net", "mx.strict.example.net", "5.7.23", "failed",
     "550 5.7.23 <member@strict.example.net>: Recipient address rejected: Message rejected due to: SPF fail - "
     "not authorized. Please see http://www.openspf.net/Why?s=mfrom;id=grp-bounces@lists.example.org", "ours"),
    ("mailbox-disabled-generic", "left@corp.example.com", "mx.corp.example.com", "5.2.1", "failed",
     "550 5.2.1 <left@corp.example.com>: Mailbox disabled, not accepting messages", "permanent"),
]

POSTFIX = """\
Return-Path: <>
Received: by mx.lists.example.org (Postfix)
	id 4WFx2K3PqNz9sTL; Mon,  1 Jul 2024 10:00:02 +0000 (UTC)
Authentication-Results: mx.lists.example.org; dmarc=none header.from=lists.example.org
Date: Mon,  1 Jul 2024 10:00:02 +0000 (UTC)
From: MAILER-DAEMON@mx.lists.example.org (Mail Delivery System)
Subject: {subject}
To: grp-bounces+{verp}=0123456789@lists.example.org
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
	boundary="4WFx2K3PqNz9sTL.1719828002/mx.lists.example.org"
Content-Transfer-Encoding: 8bit
Message-Id: <20240701100002.4WFx2K3PqNz9sTL@mx.lists.example.org>

This is a MIME-encapsulated message.

--4WFx2K3PqNz9sTL.1719828002/mx.lists.example.org
Content-Description: Notification
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

This is the mail system at host mx.lists.example.org.

{intro}

                   The mail system

{line}

--4WFx2K3PqNz9sTL.1719828002/mx.lists.example.org
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.lists.example.org
X-Postfix-Queue-ID: 4WFx2K3PqNz9sTL
X-Postfix-Sender: rfc822; grp-bounces+{verp}=0123456789@lists.example.org
Arrival-Date: Mon,  1 Jul 2024 09:59:58 +0000 (UTC)

Final-Recipient: rfc822; {rcpt}
Original-Recipient: rfc822;{rcpt}
Action: {action}
Status: {status}
{remote}Diagnostic-Code: {diag}

--4WFx2K3PqNz9sTL.1719828002/mx.lists.example.org
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers
Content-Transfer-Encoding: 8bit

Return-Path: <grp-bounces+{verp}=0123456789@lists.example.org>
Received: from localhost (localhost [127.0.0.1])
	by mx.lists.example.org (Postfix) with ESMTP id 4WFx2K3PqNz9sTL
	for <{rcpt}>; Mon,  1 Jul 2024 09:59:58 +0000 (UTC)
Authentication-Results: mx.lists.example.org; dmarc=none header.from=lists.example.org
From: "Alice via grp" <grp@lists.example.org>
To: grp@lists.example.org
Subject: [grp] Agenda for Thursday
List-Id: grp <grp.lists.example.org>
Message-ID: <agenda-1@example.net>

--4WFx2K3PqNz9sTL.1719828002/mx.lists.example.org--
"""

FAILED_INTRO = ("I'm sorry to have to inform you that your message could not\nbe delivered to one or more "
                "recipients. It's attached below.\n\nFor further assistance, please send mail to postmaster.\n\n"
                "If you do so, please include this problem report. You can\ndelete your own text from the "
                "attached returned message.")
DELAYED_INTRO = ("####################################################################\n# THIS IS A WARNING ONLY.  "
                 "YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\n"
                 "####################################################################\n\nYour message could not "
                 "be delivered for more than 4 hour(s).\nIt will be retried until it is 5 day(s) old.")


def render(rcpt: str, mx: str, status: str, action: str, reply: str) -> str:
    remote = f"Remote-MTA: dns; {mx}\n" if mx else ""
    diag = f"smtp; {reply}" if mx else f"X-Postfix; {reply}"
    said = f"host {mx}[192.0.2.10] said: {reply} (in reply to RCPT TO command)" if mx else reply
    line = "\n    ".join(textwrap.wrap(f"<{rcpt}>: {said}", 76))
    folded = "\n    ".join(textwrap.wrap(diag, 76))
    local, _, domain = rcpt.partition("@")
    delayed = action == "delayed"
    return POSTFIX.format(subject="Delayed Mail (still being retried)" if delayed else
                          "Undelivered Mail Returned to Sender", verp=f"{local}={domain}",
                          intro=DELAYED_INTRO if delayed else FAILED_INTRO, line=line, rcpt=rcpt, action=action,
                          status=status, remote=remote, diag=folded)


if __name__ == "__main__":
    for name, rcpt, mx, status, action, reply, kind in REPLIES:
        (HERE / f"{name}.eml").write_text(render(rcpt, mx, status, action, reply))
        print(f"{name}.eml,{kind},{rcpt}")
