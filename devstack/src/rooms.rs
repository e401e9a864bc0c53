//! The demo's check of conference rooms: every room the stand-in's calls joined is stored
//! with each participant's join, leave and reason, the room's end, and the link from the
//! call to the room, whatever order the room's callbacks arrived in.

use std::collections::BTreeMap;

use voicectl::simulate::{Requested, SimulationReport};
use voicehooks::calls::DynamoCallStore;

/// What the rooms came to.
#[derive(Debug, Default)]
pub struct RoomsCheck {
    pub rooms: usize,
    /// Distinct room events the stand-in sent.
    pub events: usize,
    /// Rooms whose events were delivered out of `SequenceNumber` order.
    pub delivered_out_of_order: usize,
    /// Rooms stored exactly as their events tell.
    pub verified: usize,
    pub mismatches: Vec<String>,
}

/// The room events of one call, by `ConferenceSid`, in delivery order.
fn rooms_of(requested: &[Requested]) -> BTreeMap<&str, Vec<&Requested>> {
    let mut rooms: BTreeMap<&str, Vec<&Requested>> = BTreeMap::new();
    for r in requested {
        if let Some(room) = r.params.get("ConferenceSid") {
            rooms.entry(room).or_default().push(r);
        }
    }
    rooms
}

pub async fn check(
    store: &DynamoCallStore,
    report: &SimulationReport,
) -> anyhow::Result<RoomsCheck> {
    let mut check = RoomsCheck::default();
    for call in &report.calls {
        for (sid, events) in rooms_of(&call.conversation.requested) {
            check.rooms += 1;
            check.events += events.len();
            let seqs: Vec<u32> = events
                .iter()
                .filter_map(|e| e.params.get("SequenceNumber")?.parse().ok())
                .collect();
            if seqs.windows(2).any(|w| w[0] > w[1]) {
                check.delivered_out_of_order += 1;
            }
            let before = check.mismatches.len();
            let mut problem = |what: String| check.mismatches.push(format!("room {sid}: {what}"));
            let Some(room) = store.get_conference(sid).await? else {
                problem("not stored".into());
                continue;
            };
            // Ground truth: the last of each param the events carried, in Twilio's order.
            let mut ordered = events.clone();
            ordered.sort_by_key(|e| {
                e.params
                    .get("SequenceNumber")
                    .and_then(|s| s.parse::<u32>().ok())
            });
            let last = |name: &str| {
                ordered
                    .iter()
                    .rev()
                    .find_map(|e| e.params.get(name).map(str::to_owned))
            };
            if room.events != events.len() {
                problem(format!(
                    "{} events folded, {} sent",
                    room.events,
                    events.len()
                ));
            }
            if room.friendly_name != last("FriendlyName") {
                problem(format!(
                    "named {:?}, expected {:?}",
                    room.friendly_name,
                    last("FriendlyName")
                ));
            }
            let ended = events
                .iter()
                .any(|e| e.params.get("StatusCallbackEvent") == Some("conference-end"));
            if ended
                && (room.status != "completed" || room.end_reason != last("ReasonConferenceEnded"))
            {
                problem(format!(
                    "{} ({:?}), expected completed ({:?})",
                    room.status,
                    room.end_reason,
                    last("ReasonConferenceEnded")
                ));
            }
            let participant = call.call_sid();
            match room.participant(participant) {
                None => problem(format!("{participant} is not among its participants")),
                Some(p) => {
                    if p.in_room || p.joined_at.is_none() || p.left_at.is_none() {
                        problem(format!(
                            "{participant}: joined {:?}, left {:?}, in room {}",
                            p.joined_at, p.left_at, p.in_room
                        ));
                    }
                    if p.left_reason != last("ReasonParticipantLeft") {
                        problem(format!(
                            "{participant} left {:?}, expected {:?}",
                            p.left_reason,
                            last("ReasonParticipantLeft")
                        ));
                    }
                }
            }
            let linked = store
                .get_call(participant)
                .await?
                .is_some_and(|c| c.conferences.iter().any(|c| c == sid));
            if !linked {
                problem(format!("{participant}'s call does not name the room"));
            }
            if check.mismatches.len() == before {
                check.verified += 1;
            }
        }
    }
    Ok(check)
}
