"""SIP calls: loopcall's own small SIP user agent and RTP, behind the common ``Call``.

Stage: the channel for ``sip:USER@HOST[:PORT][;transport=udp|tcp]`` targets, and
the SIP side of the reference agent.  Modules, in the order a call uses them:
``message`` (parse and build SIP messages), ``sdp`` (offer and answer),
``digest`` (401/407 authentication), ``transport`` (UDP and TCP sockets),
``agent`` (transactions and dialogs), ``rtp`` (G.711 RTP, jitter buffer, RFC 4733
DTMF), ``call`` (the ``Call`` implementations).
"""
