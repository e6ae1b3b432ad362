"""SIP calls: loopcall's own small SIP user agent and RTP, behind the common ``Call``.

Stage: the channel for ``sip:USER@HOST[:PORT][;transport=udp|tcp]`` targets, and
the SIP side of the reference agent.  Modules, in the order a call uses them:
``message`` (parse and build SIP messages), ``builders`` (responses, ACKs and
CANCELs built from other messages), ``sdp`` (offer and answer), ``digest``
(401/407 authentication), ``transport`` (UDP and TCP sockets), ``transaction``
and ``phone`` (the user agent: transactions, retransmission, dispatch; ``acks``
and ``recent`` hold what it remembers), ``dialing`` (placing and answering a
call), ``listeners`` (where inbound cases wait) and ``session`` (the dialog once
up), ``rtp``, ``latch``, ``stamped_socket`` and ``jitter`` (G.711 RTP, whose
source it is, kernel arrival times, the reorder buffer, RFC 4733 DTMF), ``call``
(``SipCall``, the common ``Call`` over all of it).
"""
