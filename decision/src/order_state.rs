//! The life of an order, as a state machine with only valid transitions.
//!
//! ```text
//! Created -> Sent -> Acknowledged -> PartiallyFilled -> Filled
//!              |          |   \----------------------^ |
//!              |          +--> Cancelled / Expired      |
//!              +--> Rejected (by the bridge or the terminal)
//!   Sent, Acknowledged, PartiallyFilled --(connection lost)--> Unknown
//!   Unknown --(snapshot settles it)--> Acknowledged / PartiallyFilled / Filled / Rejected
//! ```
//!
//! An order in `Unknown` is never resent: only evidence from the terminal (its snapshot and
//! trade history) moves it on.

use std::fmt;

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderState {
    /// Made by execution, not yet handed to the bridge.
    Created,
    /// Handed to the bridge.
    Sent,
    /// The terminal accepted it.
    Acknowledged,
    /// Some volume filled.
    PartiallyFilled,
    /// All volume filled. Final.
    Filled,
    /// Refused by the bridge or the terminal. Final.
    Rejected,
    /// Cancelled before it filled completely. Final.
    Cancelled,
    /// Expired before it filled completely. Final.
    Expired,
    /// Its answer was lost; waiting for the terminal's snapshot to settle it.
    Unknown,
}

impl OrderState {
    /// True for states an order never leaves.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Filled | Self::Rejected | Self::Cancelled | Self::Expired)
    }

    /// Stable snake_case name, as journals and reports write it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Sent => "sent",
            Self::Acknowledged => "acknowledged",
            Self::PartiallyFilled => "partially_filled",
            Self::Filled => "filled",
            Self::Rejected => "rejected",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for OrderState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What can happen to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderEvent {
    /// Handed to the bridge.
    Send,
    /// The terminal accepted it.
    Ack,
    /// A fill; `complete` when the filled volume reaches the order's volume.
    Fill {
        /// The order is now wholly filled.
        complete: bool,
    },
    /// Refused.
    Reject,
    /// Cancelled.
    Cancel,
    /// Expired.
    Expire,
    /// The connection it was sent on was lost before it was settled, or no answer came in time.
    Lose,
}

/// A transition the state machine does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("order in state {from} cannot take {event:?}")]
pub struct InvalidTransition {
    /// The state.
    pub from: OrderState,
    /// The event refused.
    pub event: OrderEvent,
}

/// The next state, or why there is none.
pub fn transition(from: OrderState, event: OrderEvent) -> Result<OrderState, InvalidTransition> {
    use OrderEvent as E;
    use OrderState as S;
    let next = match (from, event) {
        (S::Created, E::Send) => S::Sent,
        (S::Created | S::Sent | S::Unknown, E::Reject) => S::Rejected,
        (S::Sent | S::Unknown, E::Ack) => S::Acknowledged,
        // An ack may arrive after the first fill; it changes nothing then.
        (S::Acknowledged | S::PartiallyFilled, E::Ack) => from,
        (S::Sent | S::Acknowledged | S::PartiallyFilled | S::Unknown, E::Fill { complete: true }) => {
            S::Filled
        }
        (S::Sent | S::Acknowledged | S::PartiallyFilled | S::Unknown, E::Fill { complete: false }) => {
            S::PartiallyFilled
        }
        (S::Acknowledged | S::PartiallyFilled, E::Cancel) => S::Cancelled,
        (S::Acknowledged | S::PartiallyFilled, E::Expire) => S::Expired,
        (S::Sent | S::Acknowledged | S::PartiallyFilled, E::Lose) => S::Unknown,
        (S::Unknown, E::Lose) => S::Unknown,
        _ => return Err(InvalidTransition { from, event }),
    };
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_happy_paths() {
        let mut s = OrderState::Created;
        for e in [OrderEvent::Send, OrderEvent::Ack, OrderEvent::Fill { complete: false }, OrderEvent::Fill { complete: true }] {
            s = transition(s, e).unwrap();
        }
        assert_eq!(s, OrderState::Filled);
        let lost = transition(OrderState::Sent, OrderEvent::Lose).unwrap();
        assert_eq!(transition(lost, OrderEvent::Fill { complete: true }), Ok(OrderState::Filled));
    }

    #[test]
    fn invalid_transitions_are_refused_by_name() {
        let error = transition(OrderState::Filled, OrderEvent::Send).unwrap_err();
        assert_eq!(error.to_string(), "order in state filled cannot take Send");
        assert!(transition(OrderState::Created, OrderEvent::Ack).is_err(), "no ack before sending");
        assert!(transition(OrderState::Created, OrderEvent::Lose).is_err());
        assert!(transition(OrderState::Unknown, OrderEvent::Send).is_err(), "never resent");
    }

    fn event() -> impl Strategy<Value = OrderEvent> {
        prop_oneof![
            Just(OrderEvent::Send),
            Just(OrderEvent::Ack),
            any::<bool>().prop_map(|complete| OrderEvent::Fill { complete }),
            Just(OrderEvent::Reject),
            Just(OrderEvent::Cancel),
            Just(OrderEvent::Expire),
            Just(OrderEvent::Lose),
        ]
    }

    proptest! {
        /// Whatever happens, a final state is never left, an order is sent at most once, and
        /// nothing but Send leaves Created.
        #[test]
        fn final_states_are_final_and_orders_are_sent_once(events in proptest::collection::vec(event(), 0..40)) {
            let mut state = OrderState::Created;
            let mut sends = 0;
            for event in events {
                match transition(state, event) {
                    Ok(next) => {
                        prop_assert!(!state.is_final(), "left final state {state}");
                        if event == OrderEvent::Send {
                            sends += 1;
                        }
                        if state == OrderState::Created {
                            prop_assert!(matches!(event, OrderEvent::Send | OrderEvent::Reject));
                        }
                        state = next;
                    }
                    Err(error) => prop_assert_eq!(error.from, state),
                }
            }
            prop_assert!(sends <= 1);
        }
    }
}
