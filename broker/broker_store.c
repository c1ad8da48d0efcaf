/* store dispatch: to be written */
