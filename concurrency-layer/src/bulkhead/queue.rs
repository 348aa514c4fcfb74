//! [`WaitQueue`]: the calls waiting for a place, by class.

use std::collections::VecDeque;

use crate::priority::Priority;

/// A bounded queue of waiting calls, one FIFO per [`Priority`].
///
/// Calls leave highest class first, oldest first within a class. When the queue is full,
/// a newcomer pushes out the **newest** call of the **lowest** class below its own (that
/// call has waited least, so shedding it wastes least); with none below, the newcomer is
/// the one refused. Pure data: the limiter holds it under its lock.
#[derive(Debug)]
pub struct WaitQueue<T> {
    classes: [VecDeque<(u64, T)>; 4],
    len: usize,
    capacity: usize,
    next_id: u64,
}

/// What [`WaitQueue::push`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Push<T> {
    /// Queued under this id.
    Queued(u64),
    /// Queued under this id, pushing out a lower class's waiter.
    QueuedShedding(u64, Priority, T),
    /// Refused: the queue is full of calls of this class or higher.
    Full(T),
}

impl<T> WaitQueue<T> {
    /// A queue for at most `capacity` waiters (0 queues nothing).
    pub fn new(capacity: usize) -> Self {
        Self {
            classes: Default::default(),
            len: 0,
            capacity,
            next_id: 0,
        }
    }

    /// Waiters queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether none wait.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether a waiter of `priority` or a higher class is queued (such a one goes first).
    pub fn has_at_or_above(&self, priority: Priority) -> bool {
        self.classes[..=priority.index()]
            .iter()
            .any(|c| !c.is_empty())
    }

    /// Queues `value` as a call of `priority`.
    pub fn push(&mut self, priority: Priority, value: T) -> Push<T> {
        if self.capacity == 0 {
            return Push::Full(value);
        }
        let mut shed = None;
        if self.len >= self.capacity {
            let lower = (priority.index() + 1..self.classes.len())
                .rev()
                .find(|&i| !self.classes[i].is_empty());
            let Some(i) = lower else {
                return Push::Full(value);
            };
            if let Some((_, evicted)) = self.classes[i].pop_back() {
                self.len -= 1;
                shed = Some((Priority::ALL[i], evicted));
            }
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.classes[priority.index()].push_back((id, value));
        self.len += 1;
        match shed {
            Some((p, evicted)) => Push::QueuedShedding(id, p, evicted),
            None => Push::Queued(id),
        }
    }

    /// The class of the waiter that would leave next.
    pub fn front_priority(&self) -> Option<Priority> {
        self.classes
            .iter()
            .position(|c| !c.is_empty())
            .map(|i| Priority::ALL[i])
    }

    /// Takes the waiter that leaves next.
    pub fn pop_front(&mut self) -> Option<(Priority, T)> {
        let i = self.classes.iter().position(|c| !c.is_empty())?;
        let (_, value) = self.classes[i].pop_front()?;
        self.len -= 1;
        Some((Priority::ALL[i], value))
    }

    /// Takes waiter `id` of `priority` out (it gave up), if it is still queued.
    pub fn remove(&mut self, priority: Priority, id: u64) -> Option<T> {
        let class = &mut self.classes[priority.index()];
        // Ids grow within a class, so the search is a binary one.
        let at = class.binary_search_by_key(&id, |(i, _)| *i).ok()?;
        let (_, value) = class.remove(at)?;
        self.len -= 1;
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Priority::*;

    #[test]
    fn highest_class_first_and_sheds_the_newest_lowest() {
        let mut q = WaitQueue::new(3);
        assert_eq!(q.push(Low, "l1"), Push::Queued(0));
        assert_eq!(q.push(Normal, "n1"), Push::Queued(1));
        assert_eq!(q.push(Low, "l2"), Push::Queued(2));
        assert_eq!(q.push(Critical, "c1"), Push::QueuedShedding(3, Low, "l2"));
        assert_eq!(q.push(Low, "l3"), Push::Full("l3"), "nothing lower to shed");
        assert_eq!(q.push(Normal, "n2"), Push::QueuedShedding(4, Low, "l1"));
        assert!(q.has_at_or_above(Critical));
        assert_eq!(q.front_priority(), Some(Critical));
        assert_eq!(q.pop_front(), Some((Critical, "c1")));
        assert_eq!(q.remove(Normal, 4), Some("n2"));
        assert_eq!(q.remove(Normal, 4), None);
        assert_eq!(q.pop_front(), Some((Normal, "n1")));
        assert!(q.is_empty());
        assert!(!q.has_at_or_above(Low));
    }

    #[test]
    fn zero_capacity_queues_nothing() {
        let mut q = WaitQueue::new(0);
        assert_eq!(q.push(Critical, ()), Push::Full(()));
    }
}
