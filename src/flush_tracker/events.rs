//! What the tracker tells its subscribers: the global durable offset
//! advanced, or a shape was lost with data that was not durable. Events are
//! delivered in order, under the tracker's head lock.

use bytes::Bytes;

use crate::sync::mpsc;
use crate::LogOffset;

/// What the tracker tells its subscribers.
///
/// ```
/// use shapebuf::{FlushEvent, FlushTracker, LogOffset};
/// let tracker = FlushTracker::new();
/// let events = tracker.subscribe();
/// let s = tracker.register("s");
/// tracker.commit(LogOffset::new(1, 0), [("s", LogOffset::new(1, 0))])?;
/// s.crashed(LogOffset::ZERO); // its writer died before flushing 1/0
/// match events.try_recv() {
///     Ok(FlushEvent::Lost(loss)) => assert_eq!(&loss.shape[..], b"s"),
///     other => panic!("expected a loss, got {other:?}"),
/// }
/// assert!(matches!(events.try_recv(), Ok(FlushEvent::Advanced(_))));
/// # Ok::<(), shapebuf::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlushEvent {
    /// The global durable offset advanced to this offset.
    Advanced(LogOffset),
    /// A shape was removed with data that was not durable. Emitted before
    /// any advance past that data.
    Lost(Loss),
}

/// A shape removed while it had data that was not durable.
///
/// ```
/// use shapebuf::{FlushTracker, LogOffset};
/// let tracker = FlushTracker::new();
/// let s = tracker.register("s");
/// s.flushed(LogOffset::new(1, 4));
/// tracker.commit(LogOffset::new(2, 9), [("s", LogOffset::new(2, 3))])?;
/// let loss = s.crashed(LogOffset::new(1, 4)).expect("first removal");
/// assert_eq!(loss.after, LogOffset::new(1, 4));
/// assert_eq!(loss.received_through, Some(LogOffset::new(2, 3)));
/// # Ok::<(), shapebuf::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loss {
    /// The shape's id.
    pub shape: Bytes,
    /// Everything the shape received up to this offset is durable; entries
    /// after it may be lost.
    pub after: LogOffset,
    /// The last offset of a committed transaction the shape was known to
    /// have received and not made durable (`None` if the tracker knew of
    /// none: the writer died inside a transaction that had not committed).
    pub received_through: Option<LogOffset>,
}

pub(super) type Callback = Box<dyn FnMut(&FlushEvent) + Send>;

#[derive(Default)]
pub(super) struct Subscribers {
    pub(super) channels: Vec<mpsc::Sender<FlushEvent>>,
    pub(super) callbacks: Vec<Callback>,
}

impl Subscribers {
    pub(super) fn emit(&mut self, event: FlushEvent) {
        self.channels.retain(|c| c.send(event.clone()).is_ok());
        for f in &mut self.callbacks {
            f(&event);
        }
    }
}
