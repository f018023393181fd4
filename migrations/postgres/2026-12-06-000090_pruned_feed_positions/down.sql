DROP TABLE pruned_feed_positions;
