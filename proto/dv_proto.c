/* codec: to be written */
