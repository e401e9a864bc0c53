//! Conference rooms: who was in the room, when, muted or held, and how each left.
//!
//! A room's events arrive in any order and any number of times (Twilio retries, SQS
//! redelivers, two workers may hold one room's events at once). So each event is written
//! once as its own item (`pk = CONF#<ConferenceSid>`, `sk = EVENT#<idempotency key>`, a
//! conditional put: a second delivery is a duplicate), and the room (`sk = STATE`) is then
//! rebuilt by [`fold`] from every event stored, in `SequenceNumber` order: the same events
//! give the same room whatever order they came in. The room's write is conditional on
//! having folded more events than the stored room, so a worker that read fewer never
//! overwrites one that read more (the last event written is read by its own worker's query,
//! so some worker always writes the room with every event). A duplicate folds again too: its
//! first delivery may have stopped between the two writes.
//!
//! Each participant's call item is linked to the room on join and leave (`conferences`, a
//! string set), which is how `voicectl call` finds the rooms a call was in.
//!
//! Per event: a put, a query of the room's events and a put (and an update on join and
//! leave). A room has at most 250 participants (Twilio's Global Conference), each a few
//! events, so the query stays within one or two 1 MB pages.

use serde::{Deserialize, Serialize};

use super::EventError;
use crate::events::{Envelope, EventKind};
use crate::twilio::{ConferenceCallback, RoomEvent};

/// One conference callback, as the status worker applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConferenceEvent {
    pub conference_sid: String,
    pub account_sid: String,
    pub friendly_name: Option<String>,
    /// Twilio's `StatusCallbackEvent` (`participant-join`, ...).
    pub event: String,
    pub call_sid: Option<String>,
    pub sequence_number: Option<u32>,
    /// Twilio's RFC 2822 time of the event.
    pub timestamp: Option<String>,
    pub received_at: String,
    pub idempotency_key: String,
    pub muted: Option<bool>,
    pub hold: Option<bool>,
    pub coaching: Option<bool>,
    pub reason_participant_left: Option<String>,
    pub participant_call_status: Option<String>,
    pub reason_conference_ended: Option<String>,
    pub call_sid_ending_conference: Option<String>,
    /// The envelope as it arrived: what the event's item keeps, and what a fold reads back.
    pub envelope: String,
}

impl ConferenceEvent {
    pub fn from_envelope(envelope: &Envelope) -> Result<Self, EventError> {
        if envelope.kind != EventKind::ConferenceStatus {
            return Err(EventError::WrongKind(envelope.kind));
        }
        let cb = ConferenceCallback::parse(&envelope.params)?;
        let owned = |s: Option<&str>| s.map(str::to_owned);
        Ok(Self {
            conference_sid: cb.conference_sid.to_owned(),
            account_sid: cb.account_sid.to_owned(),
            friendly_name: owned(cb.friendly_name),
            event: cb.event.as_str().to_owned(),
            call_sid: owned(cb.call_sid),
            sequence_number: cb.sequence_number,
            timestamp: owned(cb.timestamp),
            received_at: envelope.received_at.clone(),
            idempotency_key: envelope.idempotency_key.clone(),
            muted: cb.muted,
            hold: cb.hold,
            coaching: cb.coaching,
            reason_participant_left: owned(cb.reason_participant_left),
            participant_call_status: owned(cb.participant_call_status),
            reason_conference_ended: owned(cb.reason_conference_ended),
            call_sid_ending_conference: owned(cb.call_sid_ending_conference),
            envelope: envelope.to_json(),
        })
    }

    pub(crate) fn room_event(&self) -> RoomEvent<'_> {
        RoomEvent::parse(&self.event).unwrap_or(RoomEvent::Other(""))
    }

    /// Twilio's time of the event, else when we received it.
    fn at(&self) -> &str {
        self.timestamp.as_deref().unwrap_or(&self.received_at)
    }

    /// Where the event stands among the room's: Twilio's sequence, then our arrival (RFC
    /// 3339 parsed, as its fractions vary in length).
    fn order(&self) -> (u32, Option<time::OffsetDateTime>) {
        let received = time::OffsetDateTime::parse(
            &self.received_at,
            &time::format_description::well_known::Rfc3339,
        )
        .ok();
        (self.sequence_number.unwrap_or(u32::MAX), received)
    }
}

/// A room as its events tell it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Room {
    pub conference_sid: String,
    pub friendly_name: Option<String>,
    /// `init` (participants waiting), `in-progress` (started), `completed` (ended): the
    /// Conference resource's statuses.
    pub status: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    /// `ReasonConferenceEnded`.
    pub end_reason: Option<String>,
    /// `CallSidEndingConference`.
    pub ended_by: Option<String>,
    /// In the order they first appeared.
    pub participants: Vec<Participant>,
    /// Events folded (distinct deliveries).
    pub events: usize,
    /// The highest `SequenceNumber` folded.
    pub last_sequence_number: Option<u32>,
}

impl Room {
    pub fn participant(&self, call_sid: &str) -> Option<&Participant> {
        self.participants.iter().find(|p| p.call_sid == call_sid)
    }
}

/// One call in a room.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    pub call_sid: String,
    /// When it first joined.
    pub joined_at: Option<String>,
    /// When it last left; `None` while it is in the room.
    pub left_at: Option<String>,
    pub in_room: bool,
    pub muted: bool,
    pub hold: bool,
    pub coaching: bool,
    /// `ReasonParticipantLeft` (`participant_hung_up`, ...).
    pub left_reason: Option<String>,
    /// `ParticipantCallStatus` when it left.
    pub call_status: Option<String>,
}

/// The room `events` describe, applied in Twilio's order whatever order they came in.
pub fn fold(conference_sid: &str, events: &[ConferenceEvent]) -> Room {
    let mut ordered: Vec<&ConferenceEvent> = events.iter().collect();
    // Cached: the order parses the arrival time.
    ordered.sort_by_cached_key(|e| e.order());
    let mut room = Room {
        conference_sid: conference_sid.to_owned(),
        status: "init".to_owned(),
        events: events.len(),
        last_sequence_number: events.iter().filter_map(|e| e.sequence_number).max(),
        ..Room::default()
    };
    for event in ordered {
        if room.friendly_name.is_none() {
            room.friendly_name.clone_from(&event.friendly_name);
        }
        let kind = event.room_event();
        match kind {
            RoomEvent::ConferenceStart => {
                if room.status != "completed" {
                    room.status = "in-progress".to_owned();
                }
                room.started_at = Some(event.at().to_owned());
            }
            RoomEvent::ConferenceEnd => {
                room.status = "completed".to_owned();
                room.ended_at = Some(event.at().to_owned());
                room.end_reason.clone_from(&event.reason_conference_ended);
                room.ended_by.clone_from(&event.call_sid_ending_conference);
            }
            _ => {}
        }
        let Some(call_sid) = &event.call_sid else {
            continue;
        };
        let at = room
            .participants
            .iter()
            .position(|p| &p.call_sid == call_sid);
        let participant = match at {
            Some(i) => &mut room.participants[i],
            None => {
                room.participants.push(Participant {
                    call_sid: call_sid.clone(),
                    ..Participant::default()
                });
                room.participants.last_mut().expect("just pushed")
            }
        };
        // Every participant event says how it stands now; the event's name decides
        // what the event itself leaves out.
        let (muted, hold) = match kind {
            RoomEvent::ParticipantMute => (Some(true), None),
            RoomEvent::ParticipantUnmute => (Some(false), None),
            RoomEvent::ParticipantHold => (None, Some(true)),
            RoomEvent::ParticipantUnhold => (None, Some(false)),
            _ => (None, None),
        };
        if let Some(muted) = event.muted.or(muted) {
            participant.muted = muted;
        }
        if let Some(hold) = event.hold.or(hold) {
            participant.hold = hold;
        }
        if let Some(coaching) = event.coaching {
            participant.coaching = coaching;
        }
        match kind {
            RoomEvent::ParticipantJoin => {
                participant.in_room = true;
                participant
                    .joined_at
                    .get_or_insert_with(|| event.at().to_owned());
                participant.left_at = None;
                participant.left_reason = None;
                participant.call_status = None;
            }
            RoomEvent::ParticipantLeave => {
                participant.in_room = false;
                participant.left_at = Some(event.at().to_owned());
                participant
                    .left_reason
                    .clone_from(&event.reason_participant_left);
                participant
                    .call_status
                    .clone_from(&event.participant_call_status);
            }
            _ => {}
        }
    }
    room
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::twilio::Params;

    fn event(seq: u32, name: &str, call: Option<&str>, extra: &[(&str, &str)]) -> ConferenceEvent {
        let seq_text = seq.to_string();
        let at = format!("Wed, 02 Dec 2026 12:00:{seq:02} +0000");
        let mut pairs = vec![
            ("ConferenceSid", "CF1"),
            ("AccountSid", "AC1"),
            ("FriendlyName", "daily-standup"),
            ("StatusCallbackEvent", name),
            ("SequenceNumber", seq_text.as_str()),
            ("Timestamp", at.as_str()),
        ];
        if let Some(call) = call {
            pairs.push(("CallSid", call));
        }
        pairs.extend_from_slice(extra);
        let params: Params = pairs.into_iter().collect();
        let envelope = Envelope::from_callback(EventKind::ConferenceStatus, &params, None).unwrap();
        ConferenceEvent::from_envelope(&envelope).unwrap()
    }

    fn standup() -> Vec<ConferenceEvent> {
        vec![
            event(
                1,
                "participant-join",
                Some("CA1"),
                &[("Muted", "false"), ("Hold", "false")],
            ),
            event(
                2,
                "participant-join",
                Some("CA2"),
                &[("Muted", "false"), ("Hold", "false")],
            ),
            event(3, "conference-start", None, &[]),
            event(
                4,
                "participant-mute",
                Some("CA2"),
                &[("Muted", "true"), ("Hold", "false")],
            ),
            event(
                5,
                "participant-hold",
                Some("CA1"),
                &[("Muted", "false"), ("Hold", "true")],
            ),
            event(
                6,
                "participant-unhold",
                Some("CA1"),
                &[("Muted", "false"), ("Hold", "false")],
            ),
            event(
                7,
                "participant-leave",
                Some("CA1"),
                &[
                    ("ReasonParticipantLeft", "participant_hung_up"),
                    ("ParticipantCallStatus", "completed"),
                ],
            ),
            event(
                8,
                "participant-leave",
                Some("CA2"),
                &[
                    ("ReasonParticipantLeft", "participant_hung_up"),
                    ("ParticipantCallStatus", "completed"),
                ],
            ),
            event(
                9,
                "conference-end",
                None,
                &[
                    ("ReasonConferenceEnded", "last-participant-left"),
                    ("CallSidEndingConference", "CA2"),
                ],
            ),
        ]
    }

    #[test]
    fn a_room_keeps_each_participants_story() {
        let room = fold("CF1", &standup());
        assert_eq!(room.friendly_name.as_deref(), Some("daily-standup"));
        assert_eq!(room.status, "completed");
        assert_eq!(room.end_reason.as_deref(), Some("last-participant-left"));
        assert_eq!(room.ended_by.as_deref(), Some("CA2"));
        assert_eq!(
            room.started_at.as_deref(),
            Some("Wed, 02 Dec 2026 12:00:03 +0000")
        );
        assert_eq!((room.events, room.last_sequence_number), (9, Some(9)));
        let first = room.participant("CA1").unwrap();
        assert_eq!(
            first.joined_at.as_deref(),
            Some("Wed, 02 Dec 2026 12:00:01 +0000")
        );
        assert_eq!(
            first.left_at.as_deref(),
            Some("Wed, 02 Dec 2026 12:00:07 +0000")
        );
        assert!(!first.in_room && !first.hold && !first.muted);
        assert_eq!(first.left_reason.as_deref(), Some("participant_hung_up"));
        assert_eq!(first.call_status.as_deref(), Some("completed"));
        assert!(room.participant("CA2").unwrap().muted);
        assert_eq!(
            room.participants
                .iter()
                .map(|p| p.call_sid.as_str())
                .collect::<Vec<_>>(),
            ["CA1", "CA2"]
        );
    }

    #[test]
    fn any_arrival_order_gives_the_same_room() {
        let events = standup();
        let expected = fold("CF1", &events);
        // Every rotation and its reverse, and a few interleavings: the fold sorts by
        // Twilio's sequence, so arrival order never shows.
        for shift in 0..events.len() {
            let mut arrived = events.clone();
            arrived.rotate_left(shift);
            assert_eq!(fold("CF1", &arrived), expected, "rotated by {shift}");
            arrived.reverse();
            assert_eq!(
                fold("CF1", &arrived),
                expected,
                "rotated by {shift}, reversed"
            );
        }
        let mut odd_first: Vec<_> = events.iter().step_by(2).cloned().collect();
        odd_first.extend(events.iter().skip(1).step_by(2).cloned());
        assert_eq!(fold("CF1", &odd_first), expected);
    }

    #[test]
    fn a_room_before_its_leave_events_shows_who_is_still_in_it() {
        let events = standup();
        let room = fold("CF1", &events[..4]);
        assert_eq!(room.status, "in-progress");
        assert!(
            room.participants
                .iter()
                .all(|p| p.in_room && p.left_at.is_none())
        );
        // A mute without a `Muted` param still mutes; a rejoin clears the leave.
        let bare = event(4, "participant-mute", Some("CA1"), &[]);
        assert!(fold("CF1", &[bare]).participant("CA1").unwrap().muted);
        let mut again = events[..7].to_vec();
        again.push(event(10, "participant-join", Some("CA1"), &[]));
        let back = fold("CF1", &again);
        let p = back.participant("CA1").unwrap();
        assert!(p.in_room && p.left_at.is_none() && p.left_reason.is_none());
        assert_eq!(
            p.joined_at.as_deref(),
            Some("Wed, 02 Dec 2026 12:00:01 +0000")
        );
    }
}
