"""The FiftyOne dataset: its fields, the bulk import of label folders, the column reader, write-back and its
journal, and the locks that keep writers apart."""
